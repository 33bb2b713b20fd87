package embed

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/visage/visage/internal/dlib"
)

// faceAPITensorCount is the number of tensors in face-api's
// face_recognition_model manifest (29 conv+scale groups of 4, plus fc).
const faceAPITensorCount = 117

type faceAPIManifest []struct {
	Weights []faceAPITensor `json:"weights"`
}

type faceAPITensor struct {
	Name         string `json:"name"`
	Shape        []int  `json:"shape"`
	DType        string `json:"dtype"`
	Quantization *struct {
		DType string  `json:"dtype"`
		Scale float64 `json:"scale"`
		Min   float64 `json:"min"`
	} `json:"quantization"`
}

// BuildFromFaceAPI converts the ResNet weights shipped by the npm package
// @vladmandic/face-api (model/face_recognition_model-weights_manifest.json
// and model/face_recognition_model.bin, TF.js layout, mostly uint8
// quantised) into dlib's standard dlib_face_recognition_resnet_model_v1.dat
// at outPath. The inputs' checksums are the caller's to verify.
func BuildFromFaceAPI(manifestPath, binPath, outPath string) error {
	values, sizes, err := readFaceAPIWeights(manifestPath, binPath)
	if err != nil {
		return err
	}
	if err := dlib.BuildNet(values, sizes, outPath); err != nil {
		return fmt.Errorf("convert face-api weights: %w", err)
	}
	return nil
}

// readFaceAPIWeights dequantises every tensor (value = q*scale + min) in
// manifest order and checks that the .bin is consumed exactly.
func readFaceAPIWeights(manifestPath, binPath string) ([]float32, []int, error) {
	mj, err := os.ReadFile(manifestPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	var m faceAPIManifest
	if err := json.Unmarshal(mj, &m); err != nil {
		return nil, nil, fmt.Errorf("parse manifest %s: %w", manifestPath, err)
	}
	if len(m) != 1 || len(m[0].Weights) != faceAPITensorCount {
		return nil, nil, fmt.Errorf("manifest %s: want one group of %d tensors", manifestPath, faceAPITensorCount)
	}
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read weights: %w", err)
	}
	var values []float32
	sizes := make([]int, 0, faceAPITensorCount)
	off := 0
	for _, t := range m[0].Weights {
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		switch {
		case t.Quantization != nil && t.Quantization.DType == "uint8":
			if off+n > len(bin) {
				return nil, nil, fmt.Errorf("weights %s: tensor %s runs past the end", binPath, t.Name)
			}
			for _, q := range bin[off : off+n] {
				values = append(values, float32(float64(q)*t.Quantization.Scale+t.Quantization.Min))
			}
			off += n
		case t.Quantization == nil && t.DType == "float32":
			if off+4*n > len(bin) {
				return nil, nil, fmt.Errorf("weights %s: tensor %s runs past the end", binPath, t.Name)
			}
			for i := 0; i < n; i++ {
				values = append(values, math.Float32frombits(binary.LittleEndian.Uint32(bin[off+4*i:])))
			}
			off += 4 * n
		default:
			return nil, nil, fmt.Errorf("weights: tensor %s has an unsupported encoding", t.Name)
		}
		sizes = append(sizes, n)
	}
	if off != len(bin) {
		return nil, nil, errors.New("weights: the .bin is longer than the manifest describes")
	}
	return values, sizes, nil
}

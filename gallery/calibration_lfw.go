package gallery

// Placeholder until `visage eval identification --write-prior` writes it.
var lfwPrior = &Prior{
	Points: []PriorPoint{
		{Subjects: 1, Median: 0.75, Delta: []float64{0, 0.05, 0.07, 0.1, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18}},
		{Subjects: 1000, Median: 0.234, ProbeCohort: 0.85, GalleryCohort: 0.85, Delta: []float64{0, 0.003, 0.005, 0.009, 0.012, 0.014, 0.015, 0.017, 0.019, 0.022, 0.024}},
	},
}

// ProbePairFMR and EnrolledPairFMR are verification's false-match rates.
var (
	ProbePairFMR    = FMRCurve{Distances: []float64{0.6, 0.55, 0.5, 0.47, 0.44, 0.42, 0.40, 0.38, 0.36}}
	EnrolledPairFMR = FMRCurve{Distances: []float64{0.6, 0.55, 0.5, 0.47, 0.44, 0.42, 0.40, 0.38, 0.36}}
)

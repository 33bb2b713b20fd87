package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"regexp"
	"strings"
)

// Key tokens look like vsk_<id>_<secret>: the id (public, shown in
// listings and audit events) finds the stored hash, the whole token is
// what is hashed. A token in any other form (an operator-chosen bootstrap
// secret) has the id BootstrapKeyID.
const (
	keyPrefix = "vsk_"
	// BootstrapKeyID is the id of an admin key taken from the environment.
	BootstrapKeyID = "bootstrap"
	// MinBootstrapKeyLen is the shortest secret accepted from the
	// environment.
	MinBootstrapKeyLen = 24
)

var (
	lowerBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)
	tokenForm   = regexp.MustCompile(`^vsk_([a-z2-7]{12})_[a-z2-7]{52}$`)
)

// NewKeyToken returns a fresh key id and the token that carries it
// (260 random bits in all).
func NewKeyToken() (id, token string) {
	b := make([]byte, 40)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	s := strings.ToLower(lowerBase32.EncodeToString(b))
	id, secret := s[:12], s[12:64]
	return id, keyPrefix + id + "_" + secret
}

// KeyID returns the id a token names.
func KeyID(token string) string {
	if m := tokenForm.FindStringSubmatch(token); m != nil {
		return m[1]
	}
	return BootstrapKeyID
}

// HashToken is what the store keeps of a token.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// tokenMatches compares in constant time.
func tokenMatches(token string, hash []byte) bool {
	return subtle.ConstantTimeCompare(HashToken(token), hash) == 1
}

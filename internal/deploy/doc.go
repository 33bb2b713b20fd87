// Package deploy holds tests of the deployment files at the repository root:
// docker-compose.yml (checked with Debian's docker-compose, which validates
// and interpolates a compose file without a container engine) and the
// Dockerfile.
package deploy

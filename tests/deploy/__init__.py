"""The deployment files keep their contract: Kubernetes manifests, compose files, the Dockerfile,
the nginx proxy, monitoring, and the timeouts that tie them together."""

# A stand-in for the official nginx image, for hosts that cannot pull it (no registry): Debian's
# nginx on a local Debian base. docker-compose.yml names the official image (NGINX_IMAGE); the
# compose smoke test swaps this one in. Production uses the official image, not this file.
#   docker build -f deploy/nginx/standin.Dockerfile --build-arg BASE_IMAGE=... deploy/nginx
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# Debian security updates replace package versions, so they are not pinned here: the base
# image pins the release (bookworm). policy-rc.d keeps the package from starting a server.
# hadolint ignore=DL3008
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
    && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/nginx/sites-enabled/default

# Like the official image: graceful stop on SIGQUIT (finish requests in flight).
STOPSIGNAL SIGQUIT
EXPOSE 8080
CMD ["nginx", "-e", "stderr"]

# One image for every egressgw process on Kubernetes; the manifests choose the command:
#   node agent (DaemonSet):      egressgw agent --datastore kubernetes ...
#   controller (Deployment):     egressgw kube controller
#   gateway pods (per gateway):  egressgw gateway --pod ... --plan-file ...
#
# Build:  docker build -t ghcr.io/egressgw/egressgw:0.1.0 .
# kind:   kind load docker-image ghcr.io/egressgw/egressgw:0.1.0

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# nft (nftables transactions), ip (iproute2, debugging), bird2 (BGP for the agent),
# conntrack (flow records in gateways), iputils-ping (ICMP probes).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nftables iproute2 bird2 conntrack iputils-ping \
    && rm -rf /var/lib/apt/lists/* \
    && rm -f /etc/bird/bird.conf
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The controller runs as this user (runAsUser 65532 in the manifests); the agent and the
# gateways run as root with only the capabilities their manifests add.
RUN useradd --uid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin egressgw
ENV PYTHONUNBUFFERED=1
ENTRYPOINT []
CMD ["egressgw", "--help"]

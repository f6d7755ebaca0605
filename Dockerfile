# The image the Kubernetes manifests name (examples/kubernetes/), built
# from this checkout: docker build -t registry.example.com/loadkit:latest .
FROM python:3.11-slim
WORKDIR /opt/loadkit
COPY pyproject.toml README.md ./
COPY loadkit ./loadkit
COPY workloads ./workloads
RUN pip install --no-cache-dir ".[distributed]" && loadkit --version
CMD ["loadkit", "--help"]

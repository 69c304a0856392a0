# Self-hosting and Docker Spaces (CPU, or a dedicated GPU). ZeroGPU schedules only Gradio SDK
# Spaces (README front matter `sdk: gradio`): in this image spaces.GPU does nothing.
# The same steps as a Gradio SDK Space's build: packages.txt's Debian packages, then
# requirements.txt; `python app.py` prepares the model zoo and the browser assets on first start.
FROM python:3.11-slim

COPY packages.txt /tmp/packages.txt
RUN apt-get update && xargs -a /tmp/packages.txt apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/*
RUN useradd -m -u 1000 user && mkdir -p /data && chown user /data

USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=7860 \
    MODELS_DIR=/data/models \
    DATA_DIR=/data/jobs \
    HF_HOME=/data/huggingface \
    BROWSER_ASSETS_DIR=/data/browser-assets \
    GRADIO_ANALYTICS_ENABLED=False \
    PYTHONUNBUFFERED=1
WORKDIR /home/user/app

# requirements.txt installs the component editable from ./custom_components/browser_asr
COPY --chown=user requirements.txt .
COPY --chown=user custom_components/browser_asr custom_components/browser_asr
# torch==2.13.0 from PyPI is its CUDA build (it also runs on a CPU).
RUN pip install --no-cache-dir --user -r requirements.txt
COPY --chown=user . .

VOLUME /data
EXPOSE 7860
CMD ["python", "app.py"]

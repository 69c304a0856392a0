# Hugging Face Docker Space: serves on 7860 as a non-root user; weights are cached on /data
# (the Space's persistent volume) so restarts do not download them again.
FROM python:3.11-slim

# nodejs/npm: only to install the browser component's assets (transformers.js, onnxruntime-web).
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg nodejs npm \
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
    GRADIO_ANALYTICS_ENABLED=False \
    PYTHONUNBUFFERED=1
WORKDIR /home/user/app

COPY --chown=user requirements.txt .
COPY --chown=user custom_components/browser_asr custom_components/browser_asr
RUN cd custom_components/browser_asr && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --ignore-scripts
# torch first so the pin picks the CUDA build for this platform rather than a resolver choice.
RUN pip install --no-cache-dir --user torch==2.13.0 \
    && pip install --no-cache-dir --user -r requirements.txt
COPY --chown=user . .

VOLUME /data
EXPOSE 7860
CMD ["sh", "-c", "python -m explorer.zoo prepare && exec python app.py"]

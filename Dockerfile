# TF Serving for a model written by `python -m srgan_tf.export --out=DIR`.
#
#   docker build -t srgan-serving -f Dockerfile --build-arg MODEL_DIR=serving DIR
#   docker run --rm -p 8500:8500 -p 8501:8501 srgan-serving
#
# The build context is the export folder DIR (or any folder holding MODEL_DIR); nothing else is needed.
# MODEL_NAME must be the --name given to the export (default srgan).

# Pinned to the TF Serving release matching the TensorFlow (2.21) that writes the SavedModel.
ARG TF_SERVING_VERSION=2.21.0
FROM tensorflow/serving:${TF_SERVING_VERSION}

ARG MODEL_DIR=serving
ARG MODEL_NAME=srgan
ENV MODEL_NAME=${MODEL_NAME} \
    MODEL_BASE_PATH=/models \
    REST_PORT=8501

RUN groupadd --system --gid 10001 serving \
    && useradd --system --uid 10001 --gid serving --no-create-home --shell /usr/sbin/nologin serving

# jemalloc instead of glibc's malloc, handing freed pages back to the kernel at once: glibc keeps a request's
# freed buffers in its heaps, where the next large allocation (upscale_image's PNG) cannot reuse them.
# A 2048x2048 upscale_image request then peaks below 1.5 GB at no latency cost (README, Serving, has the
# figures); tensorflow/serving#2142 suggests the same preload. TensorFlow's own tensor pool is unaffected.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dpkg -L libjemalloc2 | grep '/libjemalloc\.so\.2$')" /usr/local/lib/libjemalloc.so.2
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 \
    MALLOC_CONF=background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0

# DIR/serving holds <name>/<version>/ and models.config; the image's entrypoint serves
# ${MODEL_BASE_PATH}/${MODEL_NAME} (the newest version, warmed up from assets.extra/).
COPY --chown=10001:10001 ${MODEL_DIR}/ /models/

USER 10001:10001
# gRPC, REST
EXPOSE 8500 8501

# Healthy once the REST model-status endpoint reports a version AVAILABLE. The image has no curl, so
# the check speaks HTTP/1.0 through bash's /dev/tcp.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/${REST_PORT} && printf "GET /v1/models/%s HTTP/1.0\r\n\r\n" "${MODEL_NAME}" >&3 && timeout 5 cat <&3 | grep -Eq "\"state\" *: *\"AVAILABLE\""'

# smevbus: one image for the gateway, the adapters and the mock agencies.
FROM python:3.11-slim-bookworm

# No xmlsec: signing is cryptography (RSA, ECDSA) and OpenSSL's gost engine (GOST R
# 34.10-2012) under smevbus's own XMLDSig layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libengine-gost-openssl \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 smevbus
WORKDIR /app

COPY pyproject.toml setup.py README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY xsd ./xsd
COPY config ./config
# gcc only while pip compiles the SMEV transform's C scanner (gateway/crypto/_smev_fast.c).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir -e . \
 && python -c "import gateway.crypto._smev_fast" \
 && apt-get purge -y --auto-remove gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /app/keys /app/data && chown smevbus /app/keys /app/data

USER smevbus
ENV SMEVBUS_KEYS_DIR=/app/keys \
    SMEVBUS_REGISTRY_FILE=/app/config/registry.toml \
    SMEVBUS_XSD_DIR=/app/xsd \
    SMEVBUS_LOG_FORMAT=json \
    SMEVBUS_HTTP_HOST=0.0.0.0

EXPOSE 8080
ENTRYPOINT ["smevbus"]
CMD ["serve"]

# One image for every service: `drgdip serve <service>` picks the stage.

# The dashboard's chart library (Apache ECharts), installed from the npm registry by the same
# script as `make setup` and served by the gateway itself: bureau networks have no internet.
FROM node:22-slim AS web
WORKDIR /build
COPY scripts/install-web.sh ./scripts/
RUN DRGDIP_WEB_ASSETS=/web bash scripts/install-web.sh

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY drgdip ./drgdip
RUN pip install --no-cache-dir .
COPY --from=web /web /opt/drgdip/web
ENV DRGDIP_HOST=0.0.0.0 DRGDIP_PORT=8000 DRGDIP_WEB_ASSETS=/opt/drgdip/web
EXPOSE 8000
ENTRYPOINT ["drgdip", "serve"]

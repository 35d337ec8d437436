# One image for every service: `drgdip serve <service>` picks the stage.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY drgdip ./drgdip
RUN pip install --no-cache-dir .
ENV DRGDIP_HOST=0.0.0.0 DRGDIP_PORT=8000
EXPOSE 8000
ENTRYPOINT ["drgdip", "serve"]

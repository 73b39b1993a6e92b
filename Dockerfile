# The Retune image (retune-airflow:latest in docker-compose.yaml): Airflow, the pinned
# requirements and the retune library. It also runs the MLflow server.
# The Airflow version here must equal the apache-airflow pin in requirements.txt
# (tests/test_compose.py checks it).
FROM apache/airflow:3.3.2-python3.11

# Mount points of named volumes, made here so that a new volume takes their owner and mode:
# owned by airflow, writable by group 0, which every AIRFLOW_UID runs with.
USER root
RUN mkdir -p /mlartifacts /opt/airflow/state \
 && chown airflow:0 /mlartifacts /opt/airflow/state \
 && chmod 2775 /mlartifacts /opt/airflow/state
USER airflow

# The dependencies first (a layer that changes only with the pins). apache-airflow is already
# in the base image; naming its version makes pip fail rather than replace it.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/retune/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
      -r /opt/retune/requirements.txt -c /opt/retune/constraints.txt

# The retune library (include/retune), without dependencies: they are installed above.
COPY --chown=airflow:0 pyproject.toml README.md /opt/retune/
COPY --chown=airflow:0 include /opt/retune/include
RUN pip install --no-cache-dir --no-deps /opt/retune \
 && pip check

# The commit the image is built from, for the models' lineage tag retune.git_commit: .git is
# not in the build context (.dockerignore) and the library is installed as a package, so
# retune.tracking.git_commit cannot ask git. Build with
#   RETUNE_GIT_COMMIT=$(git rev-parse HEAD) docker compose build
# Last, so that a new commit rebuilds no layer above.
ARG RETUNE_GIT_COMMIT=unknown
ENV RETUNE_GIT_COMMIT=${RETUNE_GIT_COMMIT}

#!/usr/bin/env bash
# Creates one database and one user (its owner) each for Airflow, MLflow and Optuna.
#
# Run by the postgres image from /docker-entrypoint-initdb.d on the first start only (an empty
# data volume); to apply a change, remove the volume (`docker compose down -v` drops all data).
# The passwords come from the environment of the postgres service (see docker-compose.yaml):
# AIRFLOW_DB_PASSWORD, MLFLOW_DB_PASSWORD, OPTUNA_DB_PASSWORD. Values are passed to psql as
# variables and quoted by psql, never pasted into the SQL text.
set -Eeo pipefail  # as the image's entrypoint, which sources this file when it is not executable

create_user_and_database() {
    local name="$1" password="$2"
    if [[ -z "${password}" ]]; then
        echo "01-databases.sh: the password for database user '${name}' is empty" >&2
        return 1
    fi
    echo "01-databases.sh: creating user and database '${name}'"
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
        -v name="${name}" -v password="${password}" <<'SQL'
CREATE USER :"name" WITH LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
GRANT ALL PRIVILEGES ON DATABASE :"name" TO :"name";
SQL
}

create_user_and_database airflow "${AIRFLOW_DB_PASSWORD:-}"
create_user_and_database mlflow "${MLFLOW_DB_PASSWORD:-}"
create_user_and_database optuna "${OPTUNA_DB_PASSWORD:-}"

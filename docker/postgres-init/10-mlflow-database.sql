-- Run once by the postgres image on an empty data volume (as POSTGRES_USER): MLflow gets a database of
-- its own, because MLflow and Optuna each keep their schema version in a table named alembic_version.
-- The job store and the Optuna studies share POSTGRES_DB (automl).
CREATE DATABASE mlflow;

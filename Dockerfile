# The Retune image: Airflow plus the pinned requirements and the retune library.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt constraints.txt pyproject.toml README.md /opt/retune/
COPY include /opt/retune/include
RUN pip install --no-cache-dir -r /opt/retune/requirements.txt -c /opt/retune/constraints.txt \
 && pip install --no-cache-dir --no-deps /opt/retune

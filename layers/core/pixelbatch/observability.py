"""Powertools Logger, Tracer and Metrics shared by every layer (no layer imports a handler)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="pixelbatch")
tracer = Tracer(service="pixelbatch")
metrics = Metrics(namespace="PixelBatch", service="pixelbatch")

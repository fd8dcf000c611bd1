"""The API's command-line client (`coursecast publish`, `coursecast courses`): it talks HTTP to the api only.

Not a process of the platform: it runs on an instructor's machine, imports services.core and itself,
and reaches Kafka, Postgres and S3 only through the api (and the presigned S3 URLs the api hands out).
"""

"""HTTP API: uploads, publishing, job status, retry and cancel (FastAPI)."""

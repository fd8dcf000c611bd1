"""The api's handlers: what each request does, apart from HTTP.

A route decodes the request, calls one handler with plain typed values, and encodes what it returns.
A handler never sees a Request or a Response (nothing here imports FastAPI): it takes the process's
`Services` (services.api.runtime), the caller and the request's values, and returns a typed result
or raises a `ProblemError`, which the app answers as an RFC 9457 problem document. One module per
resource: courses (accepting one), jobs (acting on and following one), uploads (direct uploads),
health (readiness).
"""

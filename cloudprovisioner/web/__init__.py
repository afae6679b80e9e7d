"""The HTTP layer: the only part of the package that knows HTTP.

`app` is the WSGI application (Request, routing with permissions, CORS, rendering problems);
`problems` is the one table that turns the domain's errors into problem+json answers; one module
per resource holds its handlers, which parse input, call the domain and render its answer.
Nothing below this package imports it.
"""

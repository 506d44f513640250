"""The scoring routes served by Starlette's request handler (`serving.deps.served_plainly`) answer exactly as FastAPI's
handler answered them, and a route that needs something only FastAPI's handler gives is refused when the app is built."""

import json

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Request, Response
from fastapi.routing import request_response as fastapi_request_response

from census_income.api import PLAIN_ROUTES
from census_income.schema import FEATURES
from census_income.serving.deps import served_plainly
from census_income.validation import EXAMPLE

V2 = {"inputs": [{"name": c, "shape": [1], "datatype": "INT64" if isinstance(EXAMPLE[c], int) else "BYTES",
                  "data": [EXAMPLE[c]]} for c in FEATURES]}
REQUESTS = [  # (path, body): answered, refused in each way a client can get wrong, and asked of a model not served
    ("/predict", json.dumps(EXAMPLE)),
    ("/predict", json.dumps(EXAMPLE | {"race": "Martian", "age": "41"})),
    ("/predict", "{not json"),
    ("/predict", ""),
    ("/predict", json.dumps([EXAMPLE])),
    ("/v2/models/census-income/infer", json.dumps(V2)),
    ("/v2/models/census-income/infer", json.dumps({"inputs": V2["inputs"][:-1]})),
    ("/v2/models/other/infer", json.dumps(V2)),
    ("/v2/models/census-income/versions/0000/infer", json.dumps(V2)),
    ("/v2/models/a%2Fb/versions/%C3%A9/infer", json.dumps(V2)),
]


def answers(client) -> list:
    "Each request's status, body and headers (but the date, which moves)."
    out = []
    for path, body in REQUESTS:
        r = client.post(path, content=body, headers={"Content-Type": "application/json", "X-Request-ID": "same-id"})
        out.append((path, r.status_code, r.content, sorted((k, v) for k, v in r.headers.items() if k != "date")))
    return out


def test_the_plain_routes_answer_as_fastapis_handler_did(test_client):
    routes = [r for r in test_client.app.router.routes if getattr(r, "path", None) in PLAIN_ROUTES]
    assert len(routes) == len(PLAIN_ROUTES)
    plain = [r.app for r in routes]
    served = answers(test_client)
    try:
        for r in routes:  # FastAPI's own handler, as APIRoute builds it
            r.app = fastapi_request_response(r.get_route_handler())
        fastapi = answers(test_client)
    finally:
        for r, app in zip(routes, plain, strict=True):
            r.app = app
    assert [a[1] for a in served] == [200, 422, 422, 422, 422, 200, 400, 404, 404, 404]  # every kind of answer is compared
    assert served == fastapi


def endpoint_cases():
    async def extra_query(request: Request, q: int) -> Response: ...
    async def depends(request: Request, x: str = Depends(lambda: "x")) -> Response: ...
    async def response_param(request: Request, response: Response) -> Response: ...
    async def tasks(request: Request, background: BackgroundTasks) -> Response: ...
    async def request_second(name: str, request: Request) -> Response: ...
    async def no_request(name: str) -> Response: ...
    async def number(request: Request, name: int) -> Response: ...
    async def missing(request: Request) -> Response: ...
    def blocking(request: Request, name: str) -> Response: ...
    return [pytest.param(f, says, id=f.__name__) for f, says in [
        (extra_query, "declares q, which nothing would read"),
        (depends, "depends on <lambda>, which nothing would call"),
        (response_param, "asks for FastAPI's response (response)"),
        (tasks, "asks for FastAPI's background tasks (background)"),
        (request_second, "does not take the request first"),
        (no_request, "does not take the request first"),
        (number, "takes name as <class 'int'>: FastAPI would convert it, a path gives text"),
        (missing, "does not take the path parameter name"),
        (blocking, "is not a coroutine function")]]


@pytest.mark.parametrize(("endpoint", "says"), endpoint_cases())
def test_a_route_needing_what_only_fastapis_handler_gives_is_refused(endpoint, says):
    app = FastAPI()
    app.post("/items/{name}")(endpoint)
    with pytest.raises(TypeError, match="^/items/{name}: a route served plainly takes the request") as err:
        served_plainly(app.routes[-1])
    assert says in str(err.value)


def test_a_route_taking_the_request_and_its_path_as_text_is_served():
    app = FastAPI()

    @app.post("/items/{name}/{version}")
    async def item(request: Request, name: str, version: str | None = None) -> Response:
        return Response(f"{name} {version}")

    assert served_plainly(app.routes[-1]) is app.routes[-1]

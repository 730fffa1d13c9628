from django.http import HttpRequest, HttpResponse


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def hello(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(f"hello {name}")

import pytest

from infratrace._units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("5s", 5.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("7d", 7 * 86400.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("10ns", 1e-8),
        ("2", 2.0),
        (3, 3.0),
        (0.5, 0.5),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "fast", "5 seconds", "-1s", "1x", "ms", True, None, -3, [1]])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100MB", 100 * 1024**2),
        ("512KB", 512 * 1024),
        ("1GB", 1024**3),
        ("10", 10),
        (2048, 2048),
        ("1.5k", 1536),
        ("3MiB", 3 * 1024**2),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "big", "10 XB", -1, True, 1.5])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)

"""Suite-wide collection order: the bitstream builds (marker ``synthesis``, minutes each)
go first, so that under ``pytest -n auto`` they run beside the rest instead of last."""


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("synthesis") is None)

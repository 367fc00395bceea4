from __future__ import annotations

import tricorn


def test_public_surface_is_serve_config_and_version() -> None:
    public = {name for name in dir(tricorn) if not name.startswith("_")}
    # Submodules imported as a side effect (config, errors, demo) are
    # modules, not API names; the API is what __all__ promises.
    assert set(tricorn.__all__) == {"serve", "Config", "__version__"}
    assert {"serve", "Config"} <= public
    assert all(
        not callable(getattr(tricorn, name)) or name in tricorn.__all__
        for name in public
        if not isinstance(getattr(tricorn, name), type(tricorn))
    )

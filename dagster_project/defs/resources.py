"""The ``settings`` resource: the one way configuration reaches assets, checks and sensors.

Each run (and each sensor tick) loads the settings once, from the process environment and the
``.env`` file (:func:`dagster_project.settings.load_settings`), so a changed ``.env`` takes
effect at the next run without reloading the code location, and a bad value fails that run with
one sentence naming the variable and the fix (which the run-failure sensor turns into a
pipeline-health alert) instead of breaking the code location.

The resource's own configuration is only where the ``.env`` file is; the values, some of them
secrets (the proxy URL, the webhook URLs), never appear in run configuration or the UI.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from dagster_project.settings import ConfigError, Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """The validated :class:`~dagster_project.settings.Settings` of this run."""

    env_file: str | None = None
    """The ``.env`` file to read; default ``$SPEND_WAREHOUSE_ENV_FILE``, else ``./.env``."""

    _loaded: Settings | None = PrivateAttr(default=None)

    def get(self) -> Settings:
        """The settings, loaded on first use; a bad value fails the step without retries."""
        if self._loaded is None:
            try:
                self._loaded = load_settings(
                    dotenv_path=Path(self.env_file) if self.env_file else None
                )
            except ConfigError as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from exc
        return self._loaded


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"settings": SettingsResource()})

"""Tilewise's Processing settings (Settings ▸ Options ▸ Processing ▸ Providers ▸ Tilewise): the engine's
interpreter, a Dask scheduler, how long the warm engine waits for the next run and how long a server of remote
inputs may stay silent (HTTP timeout: handed to the engine as ``TILEWISE_HTTP_TIMEOUT``). Read when an
algorithm runs, so a changed setting applies at once."""

PYTHON_SETTING = "TILEWISE_PYTHON"
SCHEDULER_SETTING = "TILEWISE_DASK_SCHEDULER"
WARM_SETTING = "TILEWISE_WARM_ENGINE_MINUTES"
#: The environment variable that overrides the warm engine setting (minutes; 0: a new engine every run).
WARM_ENV = "TILEWISE_WARM_ENGINE_MINUTES"
#: A DASK_SCHEDULER parameter value that means "this machine", whatever the Processing setting says.
LOCAL = "local"


def _processing_config():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # Processing plugin not loaded (should not happen in QGIS or qgis_process)
        return None, None
    return ProcessingConfig, Setting


def _setting(name) -> str:
    config, _ = _processing_config()
    if config is None:
        return ""
    value = config.getSetting(name)
    return str(value).strip() if value else ""


def configured_python() -> str:
    """The interpreter set in Processing options, or ''."""
    return _setting(PYTHON_SETTING)


def configured_scheduler() -> str:
    """The Dask scheduler address set in Processing options, or '' (run on this machine)."""
    return _setting(SCHEDULER_SETTING)


def configured_warm_minutes() -> str:
    """Minutes the warm engine waits for the next run: the environment variable, else the setting, else ''
    (the default)."""
    import os
    return os.environ.get(WARM_ENV, "").strip() or _setting(WARM_SETTING)


def add_settings(group, icon) -> None:
    """Declare the settings under the provider's ``group`` name (with its ``icon``)."""
    config, setting = _processing_config()
    if config is None:
        return
    config.settingIcons[group] = icon
    config.addSetting(setting(group, PYTHON_SETTING, "Python interpreter for the Tilewise engine (empty: detect)", "",
                              valuetype=setting.FILE))
    config.addSetting(setting(group, SCHEDULER_SETTING, "Dask scheduler address for Tilewise, e.g. tcp://host:8786 "
                              "(empty: run on this machine)", ""))
    config.addSetting(setting(group, WARM_SETTING, "Keep the Tilewise engine running between runs for this many "
                              "idle minutes (0: start a new engine for every run)", DEFAULT_IDLE_MINUTES,
                              valuetype=setting.FLOAT))
    config.addSetting(setting(group, HTTP_TIMEOUT_SETTING, "HTTP timeout: give up a remote input (http, s3, STAC "
                              "assets...) whose server sends nothing for this many seconds", DEFAULT_HTTP_TIMEOUT,
                              valuetype=setting.INT))
    config.readSettings()


def remove_settings() -> None:
    config, _ = _processing_config()
    if config is not None:
        config.removeSetting(PYTHON_SETTING)
        config.removeSetting(SCHEDULER_SETTING)
        config.removeSetting(WARM_SETTING)
        config.removeSetting(HTTP_TIMEOUT_SETTING)


#: Minutes the warm engine waits for the next run, when neither the setting nor the variable says.
DEFAULT_IDLE_MINUTES = 10.0

HTTP_TIMEOUT_SETTING = "TILEWISE_HTTP_TIMEOUT"
#: The environment variable the engine reads (see ``core/io/network.py``); set, it wins over the setting.
HTTP_TIMEOUT_ENV = "TILEWISE_HTTP_TIMEOUT"
DEFAULT_HTTP_TIMEOUT = 30


def engine_settings_env() -> dict:
    """What the engine's environment takes from the settings: the HTTP timeout (seconds), unless the
    environment variable is set already or the setting is empty or the default."""
    import os
    if os.environ.get(HTTP_TIMEOUT_ENV, "").strip():
        return {}
    value = _setting(HTTP_TIMEOUT_SETTING)
    try:
        seconds = float(value)
    except ValueError:
        return {}
    if seconds <= 0 or seconds == DEFAULT_HTTP_TIMEOUT:
        return {}
    return {HTTP_TIMEOUT_ENV: str(int(seconds) if seconds.is_integer() else seconds)}

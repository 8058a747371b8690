"""`codectxd install-service`: write the systemd user unit or launchd agent shipped in the repo
(systemd/codectxd.service, launchd/dev.codectx.codectxd.plist) with this install's paths."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from codectxd.config import Settings

SYSTEMD_UNIT = "codectxd.service"
LAUNCHD_PLIST = "dev.codectx.codectxd.plist"


def _codectxd_command() -> str:
    found = shutil.which("codectxd")
    if found:
        return str(Path(found).resolve())
    return f"{sys.executable} -m codectxd"


def render(template: str, settings: Settings) -> str:
    text = resources.files("codectxd").joinpath(f"data/{template}").read_text()
    return text.replace("@CODECTXD@", _codectxd_command()).replace(
        "@LOGDIR@", str(settings.paths.data_dir)
    )


def install_service(
    settings: Settings, *, dry_run: bool = False, home: Path | None = None
) -> tuple[Path, str]:
    """Write the service file for this platform; returns (path, what to run next)."""
    home = home or Path.home()
    if sys.platform == "darwin":
        target = home / "Library" / "LaunchAgents" / LAUNCHD_PLIST
        content = render(LAUNCHD_PLIST, settings)
        steps = (
            f"load it with:   launchctl load -w {target}\n"
            f"unload with:    launchctl unload -w {target}\n"
            f"logs:           {settings.paths.data_dir / 'codectxd.log'}"
        )
    else:
        target = home / ".config" / "systemd" / "user" / SYSTEMD_UNIT
        content = render(SYSTEMD_UNIT, settings)
        steps = (
            "enable it with: systemctl --user daemon-reload && "
            "systemctl --user enable --now codectxd\n"
            "status:         systemctl --user status codectxd\n"
            "logs:           journalctl --user -u codectxd -f\n"
            "to keep it running after you log out: loginctl enable-linger $USER"
        )
    if dry_run:
        return target, content
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    return target, steps

"""The plugin's settings, kept in Krita's settings (``kritarc``, group ``anycost_face_edit``).

Empty backend settings fall back to what the installer recorded (``backend_command`` in the shared
``plugin.json``) and to the newest running backend's connection file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from anycost_client.backend_launcher import parse_command
from anycost_client.backend_link import LinkSettings
from anycost_client.edit_controller import AUTO
from anycost_client.regions import DEFAULT_PADDING

GROUP = "anycost_face_edit"


@dataclass
class Settings:
    backend_command: str = ""  # empty: the command the installer recorded
    connection_file: str = ""  # a specific backend's connection file (e.g. a shared workstation)
    endpoint: str = ""  # override of the connection file's address
    preview_budget_ms: int = 80  # for a backend this plugin starts: latency budget of one preview
    padding: float = DEFAULT_PADDING  # context around the selection, × its longer side
    refine_steps: int = 0  # projection refinement steps (0: the encoder's answer only)
    quality: str = AUTO
    dialog_position: str = ""  # "x,y": where the user left the dialog (its frame's top-left), empty: not yet

    @classmethod
    def load(cls, read: Callable[[str, str, str], str]) -> Settings:
        """``read(group, key, default)`` is ``Krita.instance().readSetting``."""
        out = cls()
        for f in fields(cls):
            default = getattr(out, f.name)
            raw = read(GROUP, f.name, str(default))
            try:
                value = type(default)(raw) if raw != "" or isinstance(default, str) else default
            except (TypeError, ValueError):
                value = default
            setattr(out, f.name, value)
        out.padding = min(max(out.padding, 0.0), 2.0)
        out.preview_budget_ms = min(max(out.preview_budget_ms, 10), 10_000)
        out.refine_steps = min(max(out.refine_steps, 0), 1000)
        return out

    def save(self, write: Callable[[str, str, str], None], *names: str) -> None:
        """Write every setting, or only ``names`` (what the dialog itself changed: the settings dialog may
        have written the others meanwhile)."""
        for name, value in asdict(self).items():
            if not names or name in names:
                write(GROUP, name, str(value))

    def link_settings(self) -> LinkSettings:
        return LinkSettings(
            backend_command=parse_command(self.backend_command) or None,
            backend_args=["--preview-budget-ms", str(self.preview_budget_ms)],
            connection_file=self.connection_file or None,
            endpoint=self.endpoint or None,
            host="krita",
            client_name="krita-plugin",
        )

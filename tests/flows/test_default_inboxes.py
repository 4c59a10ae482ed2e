"""Each flow's default inbox is a folder of its own: inboxes are read recursively, so one inside
another's would turn the other flow's files into partitions of its own (a moderation day
embedded into the search collection)."""

from pathlib import PurePosixPath

from batch_workflows.flows.distillation.settings import DistillationSettings
from batch_workflows.flows.embeddings.settings import EmbeddingsSettings
from batch_workflows.flows.moderation.settings import ModerationSettings


def test_no_default_inbox_contains_another():
    inboxes = {cls.__name__: PurePosixPath(cls().watch_uri)
               for cls in (EmbeddingsSettings, ModerationSettings, DistillationSettings)}
    for name, inbox in inboxes.items():
        for other, path in inboxes.items():
            if other != name:
                assert not path.is_relative_to(inbox), f"{other}'s inbox {path} is inside {name}'s"

"""The pull-request step of the weekly audit: its own asset downstream of the OptimizationLog, so the
UI shows it and it can be re-run alone (after a rate limit, or a fixed token) without re-measuring.
"""

import dagster as dg

from ..errors import DbarchError
from ..memory import store as store_mod
from ..prs import publish
from ..resources.github import GitHubResource
from ..resources.postgres import StoreDatabase, TargetDatabase
from .partitions import AUDIT_PARTITIONS, split

GROUP = "weekly_audit"
COUNTS = ("eligible", "pull_requests", "opened", "reopened", "updated", "unchanged", "skipped", "not_eligible")


def _table_writes(target: TargetDatabase, name: str, log):
    """Write statistics for the bodies' overhead estimate; an unreachable target only loses them."""
    def fetch(tables: list) -> dict:
        try:
            with target.connect(name) as conn:
                return publish.table_writes_from(conn)(tables)
        except DbarchError as exc:
            log.warning(f"table write statistics unavailable, bodies will say so: {exc.problem}")
            return {}
    return fetch


@dg.asset(group_name=GROUP, kinds={"github"}, deps=[dg.AssetKey("optimization_log")],
          partitions_def=AUDIT_PARTITIONS)
def optimization_pull_requests(context: dg.AssetExecutionContext, store: StoreDatabase, target: TargetDatabase,
                               github: GitHubResource) -> dg.MaterializeResult:
    """One pull request per proven recommendation (or per table): a migration that creates the index
    CONCURRENTLY with its down migration, and a body with the evidence. Idempotent: open pull requests
    are updated in place, closed ones stay closed unless the evidence changed materially. Without a
    GitHub token the branches are prepared in a local git repository, with the command to push them."""
    name, _week = split(context.partition_key)
    publisher = github.publisher()
    settings = github.publish_settings()
    context.log.info(f"pull requests go to {publisher.describe()}")
    with store.connect() as s:
        snap = store_mod.latest_snapshot(s, name, str(context.partition_key))
        summary = publish.publish_pull_requests(s, publisher, target=name, settings=settings,
                                                snapshot_id=snap["snapshot_id"] if snap else None,
                                                table_writes=_table_writes(target, name, context.log),
                                                progress=context.log.info)
    metadata: dict = {key: summary[key] for key in COUNTS}
    metadata["publisher"] = summary["publisher"]
    metadata["destination"] = summary["destination"]
    if summary["urls"]:
        metadata["urls"] = dg.MetadataValue.json(summary["urls"])
    if summary["commands"]:
        metadata["push_commands"] = dg.MetadataValue.md(
            "\n\n".join(f"```bash\n{command}\n```" for command in summary["commands"]))
    if summary["outcomes"]:
        metadata["outcomes"] = dg.MetadataValue.json(summary["outcomes"])
    if summary["not_eligible_detail"]:
        metadata["not_eligible_detail"] = dg.MetadataValue.json(summary["not_eligible_detail"])
    return dg.MaterializeResult(metadata=metadata)


PR_ASSETS = [optimization_pull_requests]

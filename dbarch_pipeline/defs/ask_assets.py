"""The training corpus of `dbarch ask` as an asset: the target's tables, the documentation and the
question-SQL examples, embedded into pgvector. Re-materializing re-embeds only what changed.
"""


import dagster as dg

from ..ask.corpus import refresh_corpus
from ..resources.embedder import EmbedderResource
from ..resources.postgres import StoreDatabase, TargetDatabase

GROUP = "ask"


class AskCorpusConfig(dg.Config):
    schemas: list[str] = ["public"]
    docs: list[str] = []          # markdown or text files describing the data
    examples: str = ""            # YAML or JSON list of {question, sql}


@dg.asset(group_name=GROUP, kinds={"pgvector"})
def ask_corpus(context: dg.AssetExecutionContext, config: AskCorpusConfig, target: TargetDatabase,
               store: StoreDatabase, embedder: EmbedderResource) -> dg.MaterializeResult:
    """What `dbarch ask` retrieves from: one document per table of the target (from its catalog), the
    chunks of the documentation files and the question-SQL examples, with 384-d embeddings; only
    documents whose content hash changed are embedded again."""
    with target.connect() as t, store.connect() as s:
        summary = refresh_corpus(t, s, embedder.get(), target=target.target_name(), schemas=config.schemas,
                                 docs=config.docs, examples=config.examples or None)
    for skip in summary["skipped_examples"]:
        context.log.warning(f"example skipped ({skip['reason']}): {skip['question']}")
    metadata: dict = {key: int(summary[key]) for key in ("tables", "doc_chunks", "examples", "documents",
                                                          "embedded", "unchanged", "deleted")}
    metadata["dagster/row_count"] = int(summary["documents"])
    metadata["skipped_examples"] = len(summary["skipped_examples"])
    if summary["skipped_examples"]:
        metadata["skipped_detail"] = dg.MetadataValue.json(summary["skipped_examples"])
    return dg.MaterializeResult(metadata=metadata)


ASK_ASSETS = [ask_corpus]

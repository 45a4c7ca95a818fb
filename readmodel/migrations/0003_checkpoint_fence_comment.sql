-- Corrects what 0001 says, since applied migrations are never edited (sqlx
-- refuses a changed checksum):
-- * 0001 says the projector locks the checkpoint row at the start of every
--   batch. It does not: each batch's single statement moves the checkpoint
--   with a compare-and-set (the row must still hold the generation and
--   position the batch was folded against) and writes rows only when that
--   update found the row. The fence is that compare-and-set, at commit.
--   Only a rebuild's swap locks the row (FOR UPDATE), for its own transaction.
-- * "READMODEL.md" in 0001 is readmodel/README.md, the read model's contract.
-- The catalog comment carries the same for whoever reads the schema.

COMMENT ON TABLE readmodel.checkpoints IS
    'One row per projection stored in Postgres: the position applied and the '
    'generation table (tasks_g<n>) it belongs to. Writers fence each other '
    'with a compare-and-set on (generation, position) at commit; see '
    'readmodel/README.md.';

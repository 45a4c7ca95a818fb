-- The trash (`GET /v1/trash`, issue 22): an owner's deleted tasks, most
-- recently deleted first. The tasks read model keeps live tasks only, but the
-- change feed (0004) keeps every event of every task, deletions included, by
-- owner: a task is in the trash when its last change is a `TaskDeleted`, and
-- its last state is the fold of its changes. This index finds an owner's
-- deletions newest first without reading their other changes; the page then
-- drops those followed by a later change (a restore) through changes_task.
CREATE INDEX changes_deleted ON readmodel.changes (owner_id, recorded_at DESC, task_id DESC)
    WHERE event_type = 'TaskDeleted';

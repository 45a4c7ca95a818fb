-- The table of the plain single-row insert reference (insert.sql).
CREATE TABLE plain_events (
    position  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text  NOT NULL,
    data      jsonb NOT NULL
);
CREATE INDEX plain_events_stream ON plain_events (stream_id);

-- How many events the Postgres log holds, as bench/limits.sh reports it.
SELECT json_build_object('figure', 'appended_rows', 'rows', count(*)) FROM eventlog.events;

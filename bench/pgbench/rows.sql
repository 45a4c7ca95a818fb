-- :rows task rows spread over :owners owners (owner n has the id
-- 00000000-0000-4000-8000-<n in hex, 12 digits>), in readmodel.tasks' column
-- order without the generated columns (priority_rank, search), for COPY.
-- Deterministic, so every run copies the same bytes.
COPY (
    SELECT md5(g::text)::uuid,
           ('00000000-0000-4000-8000-' || lpad(to_hex(g % :owners + 1), 12, '0'))::uuid,
           (array['alpha','bravo','charlie','delta','echo','foxtrot','golf','hotel'])[g % 8 + 1]
               || ' ' || (array['report','review','call','fix','plan'])[g % 5 + 1] || ' ' || g,
           'seeded task ' || g,
           (array['todo','in_progress','done'])[g % 3 + 1],
           (array['low','medium','high','urgent'])[g % 4 + 1],
           CASE WHEN g % 2 = 0 THEN timestamptz '2026-06-01' + g * interval '1 minute' END,
           ARRAY[(array['home','work','bench','later'])[g % 4 + 1]],
           timestamptz '2025-01-01' + g * interval '1 second',
           timestamptz '2025-01-01' + g * interval '1 second',
           CASE WHEN g % 3 = 2 THEN timestamptz '2025-01-01' + g * interval '1 second' END,
           g % 5
    FROM generate_series(1, :rows) AS g
) TO STDOUT;

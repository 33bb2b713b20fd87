-- Enrollments per UTC day, kept by a trigger as enrollment events are
-- written: the dashboard's chart reads a few rows per day instead of
-- aggregating every enrollment event of a collection at each load
-- (100 ms at 100,000 faces). day counts days since the epoch; collection
-- '' stands for events without one.
CREATE TABLE enroll_day (
    collection TEXT    NOT NULL,
    day        INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (collection, day)
) WITHOUT ROWID;

INSERT INTO enroll_day (collection, day, count)
SELECT coalesce(collection, ''), at / 86400000000000, count(*)
FROM event WHERE kind = 'enroll' AND outcome = 'enrolled'
GROUP BY 1, 2;

CREATE TRIGGER event_enroll_day AFTER INSERT ON event
WHEN NEW.kind = 'enroll' AND NEW.outcome = 'enrolled'
BEGIN
    INSERT INTO enroll_day (collection, day, count)
    VALUES (coalesce(NEW.collection, ''), NEW.at / 86400000000000, 1)
    ON CONFLICT (collection, day) DO UPDATE SET count = count + 1;
END;

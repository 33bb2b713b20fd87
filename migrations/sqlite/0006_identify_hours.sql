-- Identifications per UTC hour, and the distance of each face's best
-- candidate in bins of 0.05, kept by a trigger as identify events are
-- written: the dashboard's charts read a few rows per hour instead of
-- the JSON of every identify event of the last hours at each load. hour
-- counts hours since the epoch; collection '' stands for events without
-- one.
CREATE TABLE identify_hour (
    collection TEXT    NOT NULL,
    hour       INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    faces      INTEGER NOT NULL,
    PRIMARY KEY (collection, hour)
) WITHOUT ROWID;

CREATE TABLE identify_bin (
    collection TEXT    NOT NULL,
    hour       INTEGER NOT NULL,
    bin        INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (collection, hour, bin)
) WITHOUT ROWID;

INSERT INTO identify_hour (collection, hour, count, faces)
SELECT coalesce(collection, ''), at / 3600000000000, count(*), coalesce(sum(json_extract(detail, '$.faces')), 0)
FROM event WHERE kind = 'identify'
GROUP BY 1, 2;

INSERT INTO identify_bin (collection, hour, bin, count)
SELECT coalesce(e.collection, ''), e.at / 3600000000000, CAST(j.value / 0.05 AS INTEGER), count(*)
FROM event e, json_each(e.detail, '$.best_distances') j
WHERE e.kind = 'identify' AND j.type IN ('real', 'integer')
GROUP BY 1, 2, 3;

CREATE TRIGGER event_identify_hour AFTER INSERT ON event
WHEN NEW.kind = 'identify'
BEGIN
    INSERT INTO identify_hour (collection, hour, count, faces)
    VALUES (coalesce(NEW.collection, ''), NEW.at / 3600000000000, 1, coalesce(json_extract(NEW.detail, '$.faces'), 0))
    ON CONFLICT (collection, hour) DO UPDATE SET count = count + 1, faces = faces + excluded.faces;
    INSERT INTO identify_bin (collection, hour, bin, count)
    SELECT coalesce(NEW.collection, ''), NEW.at / 3600000000000, CAST(j.value / 0.05 AS INTEGER), count(*)
    FROM json_each(NEW.detail, '$.best_distances') j
    WHERE j.type IN ('real', 'integer')
    GROUP BY 3
    ON CONFLICT (collection, hour, bin) DO UPDATE SET count = count + excluded.count;
END;

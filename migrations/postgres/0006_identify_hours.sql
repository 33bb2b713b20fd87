-- Identifications per UTC hour, and the distance of each face's best
-- candidate in bins of 0.05, kept by a trigger as identify events are
-- written: the dashboard's charts read a few rows per hour instead of
-- the JSON of every identify event of the last hours at each load. hour
-- counts hours since the epoch; collection '' stands for events without
-- one.
CREATE TABLE identify_hour (
    collection text COLLATE "C" NOT NULL,
    hour       bigint NOT NULL,
    count      bigint NOT NULL,
    faces      bigint NOT NULL,
    PRIMARY KEY (collection, hour)
);

CREATE TABLE identify_bin (
    collection text COLLATE "C" NOT NULL,
    hour       bigint NOT NULL,
    bin        bigint NOT NULL,
    count      bigint NOT NULL,
    PRIMARY KEY (collection, hour, bin)
);

-- The faces of an event, and its best distances as text, for numbers
-- only: a detail without them counts none.
CREATE FUNCTION identify_faces(detail json) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN json_typeof(detail->'faces') = 'number' THEN (detail->>'faces')::numeric::bigint ELSE 0 END
$$;
CREATE FUNCTION identify_distances(detail json) RETURNS SETOF float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT d::float8 FROM json_array_elements_text(
        CASE WHEN json_typeof(detail->'best_distances') = 'array' THEN detail->'best_distances' ELSE '[]'::json END) d
    WHERE d ~ '^[0-9.eE+-]+$'
$$;

INSERT INTO identify_hour (collection, hour, count, faces)
SELECT coalesce(collection, ''), at / 3600000000000, count(*), coalesce(sum(identify_faces(detail)), 0)
FROM event WHERE kind = 'identify'
GROUP BY 1, 2;

INSERT INTO identify_bin (collection, hour, bin, count)
SELECT coalesce(e.collection, ''), e.at / 3600000000000, floor(d / 0.05)::bigint, count(*)
FROM event e CROSS JOIN LATERAL identify_distances(e.detail) d
WHERE e.kind = 'identify'
GROUP BY 1, 2, 3;

CREATE FUNCTION event_identify_hour() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO identify_hour (collection, hour, count, faces)
    VALUES (coalesce(NEW.collection, ''), NEW.at / 3600000000000, 1, identify_faces(NEW.detail))
    ON CONFLICT (collection, hour) DO UPDATE
        SET count = identify_hour.count + 1, faces = identify_hour.faces + excluded.faces;
    INSERT INTO identify_bin (collection, hour, bin, count)
    SELECT coalesce(NEW.collection, ''), NEW.at / 3600000000000, floor(d / 0.05)::bigint, count(*)
    FROM identify_distances(NEW.detail) d
    GROUP BY 3
    ON CONFLICT (collection, hour, bin) DO UPDATE SET count = identify_bin.count + excluded.count;
    RETURN NULL;
END
$$;

CREATE TRIGGER event_identify_hour AFTER INSERT ON event
FOR EACH ROW WHEN (NEW.kind = 'identify')
EXECUTE FUNCTION event_identify_hour();

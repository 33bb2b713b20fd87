-- A collection's numbers of subjects, faces and pending faces, kept by
-- triggers as rows change: the overview's statistics sum a few rows
-- instead of counting a collection's faces at every load (220-380 ms at
-- 100,000 faces, before a vacuum lets the count use the index alone).
-- faces leaves out faces being deleted, as CollectionStats does.
--
-- Each statement that changes subjects or faces appends one row of
-- differences rather than updating one row per collection: a single row
-- would serialise every enrollment of a collection on its lock until
-- commit, and a transaction holding it while waiting for another's face
-- could deadlock. The store folds a collection's rows into one when they
-- pile up (see Postgres.CollectionStats); the rows go with the collection.
CREATE TABLE collection_count (
    collection    text COLLATE "C" NOT NULL,
    subjects      bigint NOT NULL DEFAULT 0,
    faces         bigint NOT NULL DEFAULT 0,
    pending_faces bigint NOT NULL DEFAULT 0
);

CREATE INDEX collection_count_collection ON collection_count (collection);

INSERT INTO collection_count (collection, subjects, faces, pending_faces)
SELECT c.name,
    (SELECT count(*) FROM subject s WHERE s.collection = c.name),
    (SELECT count(*) FROM face f WHERE f.collection = c.name AND f.state <> 'deleting'),
    (SELECT count(*) FROM face f WHERE f.collection = c.name AND f.state = 'pending')
FROM collection c;

-- A collection's rows go with it, and a new collection starts from nothing,
-- whatever a deleted one of the same name may have left (rows appended by
-- cascades after its deletion).
CREATE FUNCTION collection_count_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM collection_count WHERE collection = OLD.name;
    ELSE
        DELETE FROM collection_count WHERE collection = NEW.name;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER collection_count_reset AFTER INSERT OR DELETE ON collection
FOR EACH ROW EXECUTE FUNCTION collection_count_reset();

CREATE FUNCTION subject_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO collection_count (collection, subjects)
    SELECT collection, count(*) FROM new_subjects GROUP BY collection;
    RETURN NULL;
END
$$;

CREATE TRIGGER subject_count_insert AFTER INSERT ON subject
REFERENCING NEW TABLE AS new_subjects
FOR EACH STATEMENT EXECUTE FUNCTION subject_count_insert();

CREATE FUNCTION subject_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO collection_count (collection, subjects)
    SELECT collection, -count(*) FROM old_subjects GROUP BY collection;
    RETURN NULL;
END
$$;

CREATE TRIGGER subject_count_delete AFTER DELETE ON subject
REFERENCING OLD TABLE AS old_subjects
FOR EACH STATEMENT EXECUTE FUNCTION subject_count_delete();

CREATE FUNCTION face_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO collection_count (collection, faces, pending_faces)
    SELECT collection, count(*) FILTER (WHERE state <> 'deleting'), count(*) FILTER (WHERE state = 'pending')
    FROM new_faces GROUP BY collection;
    RETURN NULL;
END
$$;

CREATE TRIGGER face_count_insert AFTER INSERT ON face
REFERENCING NEW TABLE AS new_faces
FOR EACH STATEMENT EXECUTE FUNCTION face_count_insert();

-- Transition tables do not go with a column list (UPDATE OF state), so
-- this runs on every update of faces and appends a row only when states
-- changed.
CREATE FUNCTION face_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO collection_count (collection, faces, pending_faces)
    SELECT collection, sum(faces), sum(pending)
    FROM (
        SELECT collection, (state <> 'deleting')::int AS faces, (state = 'pending')::int AS pending FROM new_faces
        UNION ALL
        SELECT collection, -(state <> 'deleting')::int, -(state = 'pending')::int FROM old_faces
    ) d
    GROUP BY collection
    HAVING sum(faces) <> 0 OR sum(pending) <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER face_count_update AFTER UPDATE ON face
REFERENCING OLD TABLE AS old_faces NEW TABLE AS new_faces
FOR EACH STATEMENT EXECUTE FUNCTION face_count_update();

CREATE FUNCTION face_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO collection_count (collection, faces, pending_faces)
    SELECT collection, -count(*) FILTER (WHERE state <> 'deleting'), -count(*) FILTER (WHERE state = 'pending')
    FROM old_faces GROUP BY collection
    HAVING count(*) FILTER (WHERE state <> 'deleting') > 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER face_count_delete AFTER DELETE ON face
REFERENCING OLD TABLE AS old_faces
FOR EACH STATEMENT EXECUTE FUNCTION face_count_delete();

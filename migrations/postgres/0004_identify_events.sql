-- The dashboard's identification charts read one collection's identify
-- events of the last hours: this partial index finds them without
-- walking the collection's other events.
CREATE INDEX event_identified ON event (collection, at) WHERE kind = 'identify';

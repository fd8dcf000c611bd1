"""The api's own tables (users, token hashes, submissions, direct uploads), migrated like the projector's."""

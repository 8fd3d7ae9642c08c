"""Pull requests for proven recommendations: migration files, the reviewer's body, and publishing
(GitHub through PyGithub, or a local git repository when there is no token)."""

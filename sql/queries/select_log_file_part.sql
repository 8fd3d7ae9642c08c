SELECT pg_read_binary_file(%(path)s, %(offset)s, %(length)s)

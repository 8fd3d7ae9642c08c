SELECT name, size, modification
FROM pg_ls_logdir()
WHERE name ~ '\.(json|csv|log)$'
ORDER BY modification DESC

COPY dbarch.query_embedding (fingerprint, normalized_query, model, embedding) FROM STDIN WITH (FORMAT BINARY)

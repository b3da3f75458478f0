"""The backend worker process: the job registry, the feature and motion jobs, and the JSON-lines loop."""

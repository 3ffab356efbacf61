"""The teacher stage: OpenAI-compatible client, offline teacher, journal, budget, KD builder.

- `jz3.teacher.kd.build_kd(cfg, snippets_path, out_dir, limit=None, ids=None) -> KDStats`
- `jz3.teacher.runner.TeacherRunner`: journal-first, budgeted, concurrent, retried requests
- `jz3.teacher.journal.Journal` (SQLite WAL), `jz3.teacher.budget.Budget`
- backends: `jz3.teacher.openai_client.OpenAIBackend`, `jz3.teacher.offline.OfflineTeacher`
"""

"""Who is who: user tokens and the operator token (`auth`), the personas and the
starter cast seeded into a new database (`personas`).
"""

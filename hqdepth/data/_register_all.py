"""Imports every source module so that its SPEC kind is registered. Add new source modules here."""

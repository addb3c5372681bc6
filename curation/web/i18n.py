"""Interface strings of the reader page in English and French, chosen by the event's language."""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "editorial": "Newsroom",
        "journalist": "Reporter",
        "athlete": "Athlete",
        "team": "Team",
        "official": "Official",
        "other": "Other",
        "events": "Live events",
        "no_events": "No live event right now.",
        "live": "Live",
        "closed": "Ended",
        "empty": "Nothing yet: the timeline fills itself as posts arrive.",
        "source": "Source",
        "updated": "updated",
        "connecting": "Connecting…",
        "connected": "Live",
        "offline": "Offline, reconnecting…",
        "new_item": "New post",
        "older": "Load older posts",
        "timeline": "Live timeline",
        "content_warning": "Content warning",
        "reposted_by": "Shared by",
        "pinned": "Pinned",
        "header": "Key facts",
    },
    "fr": {
        "editorial": "Rédaction",
        "journalist": "Journaliste",
        "athlete": "Coureur",
        "team": "Équipe",
        "official": "Officiel",
        "other": "Autre",
        "events": "Événements en direct",
        "no_events": "Aucun direct pour le moment.",
        "live": "En direct",
        "closed": "Terminé",
        "empty": "Rien pour l'instant : le fil se remplit à mesure que les messages arrivent.",
        "source": "Source",
        "updated": "mis à jour",
        "connecting": "Connexion…",
        "connected": "En direct",
        "offline": "Hors ligne, reconnexion…",
        "new_item": "Nouveau message",
        "older": "Messages plus anciens",
        "timeline": "Fil en direct",
        "content_warning": "Avertissement",
        "reposted_by": "Partagé par",
        "pinned": "Épinglé",
        "header": "L’essentiel",
    },
}


def strings(language: str) -> dict[str, str]:
    return STRINGS.get(language, STRINGS["en"])

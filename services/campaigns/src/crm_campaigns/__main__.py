from crm_campaigns.main import create_app
from crm_campaigns.settings import Settings
from crmkit import serve


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
